# A scale set of runners from the image imagebake published. Pin
# image_version to a promoted version (the nightly job's version output), or
# set it to "latest" to follow what `imagebake promote --live` makes latest.

terraform {
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.0"
    }
  }
}

provider "azurerm" {
  features {}
}

variable "image_version" {
  type        = string
  description = "Gallery image version to deploy (X.Y.Z or latest)"
  default     = "latest"
}

variable "ssh_public_key" {
  type = string
}

data "azurerm_shared_image_version" "runner" {
  name                = var.image_version
  image_name          = "github-runner-focal"
  gallery_name        = "runner_images"
  resource_group_name = "image-gallery-rg"
}

resource "azurerm_resource_group" "runners" {
  name     = "runners-rg"
  location = "eastus"
}

resource "azurerm_virtual_network" "runners" {
  name                = "runners-vnet"
  resource_group_name = azurerm_resource_group.runners.name
  location            = azurerm_resource_group.runners.location
  address_space       = ["10.40.0.0/16"]
}

resource "azurerm_subnet" "runners" {
  name                 = "runners"
  resource_group_name  = azurerm_resource_group.runners.name
  virtual_network_name = azurerm_virtual_network.runners.name
  address_prefixes     = ["10.40.1.0/24"]
}

resource "azurerm_linux_virtual_machine_scale_set" "runners" {
  name                = "runners"
  resource_group_name = azurerm_resource_group.runners.name
  location            = azurerm_resource_group.runners.location
  sku                 = "Standard_D2s_v3"
  instances           = 2
  admin_username      = "azureuser"
  source_image_id     = data.azurerm_shared_image_version.runner.id
  upgrade_mode        = "Manual"

  admin_ssh_key {
    username   = "azureuser"
    public_key = var.ssh_public_key
  }

  os_disk {
    caching              = "ReadOnly"
    storage_account_type = "Standard_LRS"
  }

  network_interface {
    name    = "nic"
    primary = true

    ip_configuration {
      name      = "internal"
      primary   = true
      subnet_id = azurerm_subnet.runners.id
    }
  }
}

output "image_version_id" {
  value = data.azurerm_shared_image_version.runner.id
}
